"""Typed Dagster resources wrapping the plain settings, so assets never read globals or env vars."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from housing_platform.settings import HousingSettings


class HousingStateResource(dg.ConfigurableResource):
    """The state folder and the data file: where assets read inputs and write their files."""

    home: str = Field(description="State folder (HOUSING_HOME); every file the platform writes lives here.")
    data_path: str = Field(description="District CSV read by `raw_housing_data` (HOUSING_DATA_PATH).")

    @classmethod
    def from_settings(cls, settings: HousingSettings) -> "HousingStateResource":
        return cls(home=str(settings.home), data_path=str(settings.data_path))

    @property
    def settings(self) -> HousingSettings:
        return HousingSettings(home=Path(self.home), data_path=Path(self.data_path))

    def folder(self, *parts: str) -> Path:
        """A sub-folder of the state folder, created on first use."""
        path = Path(self.home).joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path
