-- 0002: the delivery model, replays, circuit changes, parked messages,
-- payload retention, and the query API's indexes. See the Postgres
-- migration for the reasoning; times are Unix nanoseconds here.

ALTER TABLE events ADD COLUMN payload_dropped_at integer;
DROP INDEX events_received_at;
CREATE INDEX events_received_at ON events (received_at, id);
CREATE INDEX events_source_received_at ON events (source, received_at, id);
CREATE INDEX events_type_received_at ON events (type, received_at, id);
CREATE INDEX events_subject_received_at ON events (subject, received_at, id);
CREATE INDEX events_payload_kept ON events (received_at) WHERE payload IS NOT NULL;

ALTER TABLE attempts ADD COLUMN stream_seq integer NOT NULL DEFAULT 0;
DROP INDEX attempts_event;
CREATE INDEX attempts_event ON attempts (event_id, destination, stream_seq);
CREATE INDEX attempts_destination_started ON attempts (destination, started_at);
CREATE INDEX attempts_destination_failed ON attempts (destination, started_at) WHERE outcome <> 'delivered';

ALTER TABLE dead_letters ADD COLUMN replay_of text NOT NULL DEFAULT '';
DROP INDEX dead_letters_destination;
CREATE INDEX dead_letters_destination ON dead_letters (destination, dead_lettered_at, id);
CREATE INDEX dead_letters_at ON dead_letters (dead_lettered_at, id);

DROP INDEX rejections_at;
CREATE INDEX rejections_at ON rejections (at, id);
CREATE INDEX rejections_source_at ON rejections (source, at, id);

CREATE INDEX audit_records_at ON audit_records (at);

CREATE TABLE deliveries (
    event_id         text NOT NULL,
    destination      text NOT NULL,
    status           text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    total_attempts   integer NOT NULL DEFAULT 0,
    last_status_code integer NOT NULL DEFAULT 0,
    last_error       text NOT NULL DEFAULT '',
    first_attempt_at integer,
    last_attempt_at  integer,
    delivered_at     integer,
    dead_letter_id   text NOT NULL DEFAULT '',
    replay_of        text NOT NULL DEFAULT '',
    updated_at       integer NOT NULL,
    mark_seq         integer NOT NULL DEFAULT 0,
    mark_kind        integer NOT NULL DEFAULT -1,
    mark_n           integer NOT NULL DEFAULT 0,
    info_seq         integer NOT NULL DEFAULT -1,
    info_n           integer NOT NULL DEFAULT 0,
    dead_letter_seq  integer NOT NULL DEFAULT -1,
    PRIMARY KEY (event_id, destination)
);
CREATE INDEX deliveries_updated ON deliveries (updated_at, event_id, destination);
CREATE INDEX deliveries_destination ON deliveries (destination, updated_at, event_id);
CREATE INDEX deliveries_status ON deliveries (status, updated_at, event_id, destination);
CREATE INDEX deliveries_destination_status ON deliveries (destination, status, updated_at, event_id);

CREATE TABLE replays (
    id             text PRIMARY KEY,
    dead_letter_id text NOT NULL,
    event_id       text NOT NULL,
    destination    text NOT NULL,
    subject        text NOT NULL,
    stream_seq     integer NOT NULL,
    requested_by   text NOT NULL DEFAULT '',
    at             integer NOT NULL
);
CREATE INDEX replays_dead_letter ON replays (dead_letter_id);
CREATE INDEX replays_event ON replays (event_id);
CREATE INDEX replays_at ON replays (at);

CREATE TABLE circuit_changes (
    id          text PRIMARY KEY,
    at          integer NOT NULL,
    destination text NOT NULL,
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    last_error  text NOT NULL DEFAULT ''
);
CREATE INDEX circuit_changes_destination ON circuit_changes (destination, at, id);
CREATE INDEX circuit_changes_at ON circuit_changes (at);
INSERT INTO circuit_changes (id, at, destination, from_state, to_state, reason, last_error)
SELECT id, at, key,
       lower(replace(coalesce(json_extract(detail, '$.circuitChanged.from'), 'CIRCUIT_STATE_UNSPECIFIED'), 'CIRCUIT_STATE_', '')),
       lower(replace(coalesce(json_extract(detail, '$.circuitChanged.to'), 'CIRCUIT_STATE_UNSPECIFIED'), 'CIRCUIT_STATE_', '')),
       coalesce(json_extract(detail, '$.circuitChanged.reason'), ''), coalesce(json_extract(detail, '$.circuitChanged.lastError'), '')
FROM audit_records WHERE kind = 'circuit';
DELETE FROM audit_records WHERE kind = 'circuit';

CREATE TABLE parked (
    id         text PRIMARY KEY,
    stream     text NOT NULL,
    subject    text NOT NULL,
    stream_seq integer NOT NULL,
    data       blob NOT NULL,
    headers    text NOT NULL DEFAULT '{}',
    error      text NOT NULL,
    parked_at  integer NOT NULL
);
CREATE INDEX parked_at ON parked (parked_at, id);
