"""The label gate: three blocking checks on `labelled_traffic`, evaluated in the asset's own step.

Each fails when this run held new labels for its rule, so a retraining that would have learned from
them stops before `training_data` with the reason in the check's metadata; the held rows stay out of
every later run until `housing-platform labels approve` releases them. Descriptions are formatted from
the run-config defaults, the one home of the limits.
"""

import dagster as dg

from housing_platform.defs.labels.config import LabelGateConfig

LABELS_ASSET = "labelled_traffic"
SCHEMA_CHECK = "labels_within_schema"
VOLUME_CHECK = "label_volume_within_limit"
CONSISTENCY_CHECK = "labels_consistent_with_trusted_data"
LABEL_CHECKS = (SCHEMA_CHECK, VOLUME_CHECK, CONSISTENCY_CHECK)


def label_check_descriptions(defaults: LabelGateConfig | None = None) -> dict[str, str]:
    limits = defaults or LabelGateConfig()
    return {
        SCHEMA_CHECK: f"At most {limits.max_schema_failure_share:.0%} of new labelled rows break the district "
        "schema (core/schema.py, the target's range included); rows that do are held either way.",
        VOLUME_CHECK: f"No source sent more than {limits.max_labels_per_source_per_day:,} labels in a UTC day; "
        "a source that did has that day's labels held.",
        CONSISTENCY_CHECK: "New labels agree with the trusted test split: per source, per ocean_proximity slice, "
        "per source × slice and overall, the champion's median label/prediction ratio and the median label "
        f"(relative to its slice) do not both move beyond ×{1 + limits.max_median_ratio_shift:g} / "
        f"×{1 + limits.max_label_shift:g} in the same direction with Mann–Whitney p below "
        f"{limits.significance:g} (Bonferroni over groups); groups under {limits.min_group_rows} rows are not judged.",
    }


def label_check_specs(defaults: LabelGateConfig | None = None) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name, asset=LABELS_ASSET, blocking=True, description=description)
        for name, description in label_check_descriptions(defaults).items()
    ]
