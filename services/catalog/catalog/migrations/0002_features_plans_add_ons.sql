-- Features, plan and add-on versions, and the request ids that make NewDraft…Version idempotent.

CREATE TABLE features (
    namespace           text        NOT NULL,
    key                 text        NOT NULL,
    name                text        NOT NULL,
    description         text        NOT NULL DEFAULT '',
    meter_key           text,
    meter_group_filters jsonb       NOT NULL DEFAULT '{}',
    metadata            jsonb       NOT NULL DEFAULT '{}',
    create_time         timestamptz NOT NULL,
    archive_time        timestamptz,
    PRIMARY KEY (namespace, key)
);

CREATE INDEX features_by_meter ON features (namespace, meter_key, key);

-- The status of a version at an instant: the same rules as catalog.domain.status.version_status, which
-- the integration tests hold together. Returns the VersionStatus values: draft, scheduled, active, archived.
CREATE FUNCTION version_status(
    effective_from timestamptz, effective_to timestamptz, archive_time timestamptz, at timestamptz
) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN effective_from IS NULL THEN
            CASE WHEN archive_time IS NOT NULL AND archive_time <= at THEN 'archived' ELSE 'draft' END
        WHEN effective_to IS NOT NULL AND effective_to <= at THEN 'archived'
        WHEN at < effective_from THEN 'scheduled'
        ELSE 'active'
    END
$$;

-- One row per plan version. `content` is the version's content (name, description, currency, billing
-- cadence, phases, metadata) in the proto3 JSON mapping of metering.catalog.v1.Plan, so amounts stay
-- decimal strings; the lifecycle lives in columns. `feature_keys` lists every feature its rate cards
-- reference, so archiving a feature finds the versions that use it.
CREATE TABLE plan_versions (
    namespace      text        NOT NULL,
    key            text        NOT NULL,
    version        integer     NOT NULL CHECK (version >= 1),
    currency       text        NOT NULL,
    content        jsonb       NOT NULL,
    feature_keys   text[]      NOT NULL DEFAULT '{}',
    effective_from timestamptz,
    effective_to   timestamptz,
    archive_time   timestamptz,
    create_time    timestamptz NOT NULL,
    update_time    timestamptz NOT NULL,
    PRIMARY KEY (namespace, key, version),
    -- a published version ends through effective_to; only a draft is abandoned with archive_time
    CHECK (effective_from IS NULL OR archive_time IS NULL)
);

-- At most one DRAFT per plan key.
CREATE UNIQUE INDEX plan_versions_one_draft ON plan_versions (namespace, key)
    WHERE effective_from IS NULL AND archive_time IS NULL;
CREATE INDEX plan_versions_by_feature ON plan_versions USING gin (feature_keys);

-- Add-on versions, like plan versions; `compatible_plan_keys` (empty: every plan in the currency) is a
-- column for the ListAddOns filter.
CREATE TABLE add_on_versions (
    namespace            text        NOT NULL,
    key                  text        NOT NULL,
    version              integer     NOT NULL CHECK (version >= 1),
    currency             text        NOT NULL,
    content              jsonb       NOT NULL,
    feature_keys         text[]      NOT NULL DEFAULT '{}',
    compatible_plan_keys text[]      NOT NULL DEFAULT '{}',
    effective_from       timestamptz,
    effective_to         timestamptz,
    archive_time         timestamptz,
    create_time          timestamptz NOT NULL,
    update_time          timestamptz NOT NULL,
    PRIMARY KEY (namespace, key, version),
    CHECK (effective_from IS NULL OR archive_time IS NULL)
);

CREATE UNIQUE INDEX add_on_versions_one_draft ON add_on_versions (namespace, key)
    WHERE effective_from IS NULL AND archive_time IS NULL;
CREATE INDEX add_on_versions_by_feature ON add_on_versions USING gin (feature_keys);

-- Request ids of state-changing RPCs keyed by a client-supplied request_id (NewDraftPlanVersion,
-- NewDraftAddOnVersion): what the first call asked for (`fingerprint`) and what it made. A retry with
-- the same id and request returns that version; the same id with another request is refused.
CREATE TABLE request_ids (
    namespace    text        NOT NULL,
    request_id   text        NOT NULL,
    method       text        NOT NULL,
    fingerprint  text        NOT NULL,
    resource_key text        NOT NULL,
    version      integer     NOT NULL,
    create_time  timestamptz NOT NULL,
    PRIMARY KEY (namespace, request_id)
);
