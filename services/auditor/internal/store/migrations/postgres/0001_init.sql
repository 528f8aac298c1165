-- Events as stored in the EVENTS stream.
CREATE TABLE events (
    id             text PRIMARY KEY,
    subject        text NOT NULL,
    source         text NOT NULL DEFAULT '',
    type           text NOT NULL DEFAULT '',
    stream_seq     bigint NOT NULL,
    received_at    timestamptz NOT NULL,
    content_type   text NOT NULL DEFAULT '',
    payload        bytea,
    payload_sha256 bytea NOT NULL,
    payload_size   integer NOT NULL,
    headers        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_received_at ON events (received_at DESC);

-- One row per HTTP request to a destination.
CREATE TABLE attempts (
    id               text PRIMARY KEY,
    event_id         text NOT NULL,
    destination      text NOT NULL,
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_us      bigint NOT NULL,
    status_code      integer NOT NULL,
    outcome          text NOT NULL,
    error            text NOT NULL DEFAULT '',
    response_snippet text NOT NULL DEFAULT '',
    final            boolean NOT NULL DEFAULT false,
    replay_of        text NOT NULL DEFAULT ''
);
CREATE INDEX attempts_event ON attempts (event_id, started_at);

-- Webhooks ingress refused.
CREATE TABLE rejections (
    id          text PRIMARY KEY,
    at          timestamptz NOT NULL,
    source      text NOT NULL,
    reason      text NOT NULL,
    detail      text NOT NULL DEFAULT '',
    remote_addr text NOT NULL DEFAULT '',
    status_code integer NOT NULL,
    event_id    text NOT NULL DEFAULT ''
);
CREATE INDEX rejections_at ON rejections (at DESC);

-- Deliveries given up on.
CREATE TABLE dead_letters (
    id               text PRIMARY KEY,
    event_id         text NOT NULL,
    destination      text NOT NULL,
    subject          text NOT NULL,
    reason           text NOT NULL,
    attempts         integer NOT NULL,
    last_status_code integer NOT NULL,
    last_error       text NOT NULL DEFAULT '',
    response_snippet text NOT NULL DEFAULT '',
    dead_lettered_at timestamptz NOT NULL,
    stream_seq       bigint NOT NULL
);
CREATE INDEX dead_letters_event ON dead_letters (event_id);
CREATE INDEX dead_letters_destination ON dead_letters (destination, dead_lettered_at DESC);

-- Every other record (duplicates, replays, circuit changes, backlog, lag,
-- alerts), as protojson.
CREATE TABLE audit_records (
    id      text PRIMARY KEY,
    at      timestamptz NOT NULL,
    service text NOT NULL,
    kind    text NOT NULL,
    key     text NOT NULL DEFAULT '',
    detail  jsonb NOT NULL
);
CREATE INDEX audit_records_kind_at ON audit_records (kind, at DESC);
