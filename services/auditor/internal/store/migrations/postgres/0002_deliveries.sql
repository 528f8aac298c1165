-- 0002: the delivery model (one row per event and destination), replays,
-- circuit changes, parked (poison) messages, payload retention, and the
-- indexes the query API needs. Lists are ordered newest first with a unique
-- tie-breaker, so every list index ends in its key columns.

-- Events: payload bodies are dropped by retention; the metadata stays.
ALTER TABLE events ADD COLUMN payload_dropped_at timestamptz;
DROP INDEX events_received_at;
CREATE INDEX events_received_at ON events (received_at, id);
CREATE INDEX events_source_received_at ON events (source, received_at, id);
CREATE INDEX events_type_received_at ON events (type, received_at, id);
CREATE INDEX events_subject_received_at ON events (subject, received_at, id);
-- Retention finds the bodies still kept without reading the rest.
CREATE INDEX events_payload_kept ON events (received_at) WHERE payload IS NOT NULL;

-- Attempts: the stream sequence tells the rounds of a delivery apart (a
-- replay is a new stream message, and its attempt numbers start again at 1).
ALTER TABLE attempts ADD COLUMN stream_seq bigint NOT NULL DEFAULT 0;
DROP INDEX attempts_event;
CREATE INDEX attempts_event ON attempts (event_id, destination, stream_seq);
CREATE INDEX attempts_destination_started ON attempts (destination, started_at);
-- The latest failure of a destination, cheaply, when most attempts succeed.
CREATE INDEX attempts_destination_failed ON attempts (destination, started_at) WHERE outcome <> 'delivered';

ALTER TABLE dead_letters ADD COLUMN replay_of text NOT NULL DEFAULT '';
DROP INDEX dead_letters_destination;
CREATE INDEX dead_letters_destination ON dead_letters (destination, dead_lettered_at, id);
CREATE INDEX dead_letters_at ON dead_letters (dead_lettered_at, id);
CREATE INDEX dead_letters_error_text ON dead_letters USING gin (to_tsvector('simple', last_error)) WHERE last_error <> '';

DROP INDEX rejections_at;
CREATE INDEX rejections_at ON rejections (at, id);
CREATE INDEX rejections_source_at ON rejections (source, at, id);

CREATE INDEX audit_records_at ON audit_records (at);

-- Where the delivery of an event to a destination stands. It is derived
-- from attempts, dead letters and replays, and merged so that the result
-- does not depend on the order records arrive in or on how often: the
-- mark_* columns place the latest happening in the delivery's history
-- (round = stream sequence; kind: -1 routed, 0 replay requested, 1 attempt,
-- 2 dead letter; attempt number), and only a later one changes the status.
CREATE TABLE deliveries (
    event_id         text NOT NULL,
    destination      text NOT NULL,
    status           text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    total_attempts   integer NOT NULL DEFAULT 0,
    last_status_code integer NOT NULL DEFAULT 0,
    last_error       text NOT NULL DEFAULT '',
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    delivered_at     timestamptz,
    dead_letter_id   text NOT NULL DEFAULT '',
    replay_of        text NOT NULL DEFAULT '',
    updated_at       timestamptz NOT NULL,
    mark_seq         bigint NOT NULL DEFAULT 0,
    mark_kind        smallint NOT NULL DEFAULT -1,
    mark_n           integer NOT NULL DEFAULT 0,
    info_seq         bigint NOT NULL DEFAULT -1,
    info_n           integer NOT NULL DEFAULT 0,
    dead_letter_seq  bigint NOT NULL DEFAULT -1,
    PRIMARY KEY (event_id, destination)
);
CREATE INDEX deliveries_updated ON deliveries (updated_at, event_id, destination);
CREATE INDEX deliveries_destination ON deliveries (destination, updated_at, event_id);
CREATE INDEX deliveries_status ON deliveries (status, updated_at, event_id, destination);
CREATE INDEX deliveries_destination_status ON deliveries (destination, status, updated_at, event_id);
CREATE INDEX deliveries_error_text ON deliveries USING gin (to_tsvector('simple', last_error)) WHERE last_error <> '';

-- Dead letters sent again (Replayed records).
CREATE TABLE replays (
    id             text PRIMARY KEY,
    dead_letter_id text NOT NULL,
    event_id       text NOT NULL,
    destination    text NOT NULL,
    subject        text NOT NULL,
    stream_seq     bigint NOT NULL,
    requested_by   text NOT NULL DEFAULT '',
    at             timestamptz NOT NULL
);
CREATE INDEX replays_dead_letter ON replays (dead_letter_id);
CREATE INDEX replays_event ON replays (event_id);
CREATE INDEX replays_at ON replays (at);

-- Breaker state changes of the destinations.
CREATE TABLE circuit_changes (
    id          text PRIMARY KEY,
    at          timestamptz NOT NULL,
    destination text NOT NULL,
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    last_error  text NOT NULL DEFAULT ''
);
CREATE INDEX circuit_changes_destination ON circuit_changes (destination, at, id);
CREATE INDEX circuit_changes_at ON circuit_changes (at);
-- Circuit changes recorded before this migration lived in audit_records.
INSERT INTO circuit_changes (id, at, destination, from_state, to_state, reason, last_error)
SELECT id, at, key,
       lower(replace(coalesce(detail->'circuitChanged'->>'from', 'CIRCUIT_STATE_UNSPECIFIED'), 'CIRCUIT_STATE_', '')),
       lower(replace(coalesce(detail->'circuitChanged'->>'to', 'CIRCUIT_STATE_UNSPECIFIED'), 'CIRCUIT_STATE_', '')),
       coalesce(detail->'circuitChanged'->>'reason', ''), coalesce(detail->'circuitChanged'->>'lastError', '')
FROM audit_records WHERE kind = 'circuit';
DELETE FROM audit_records WHERE kind = 'circuit';

-- Messages the auditor could not store however often it tried: kept whole.
CREATE TABLE parked (
    id         text PRIMARY KEY,
    stream     text NOT NULL,
    subject    text NOT NULL,
    stream_seq bigint NOT NULL,
    data       bytea NOT NULL,
    headers    jsonb NOT NULL DEFAULT '{}',
    error      text NOT NULL,
    parked_at  timestamptz NOT NULL
);
CREATE INDEX parked_at ON parked (parked_at, id);
