-- 0004: an event id can name more than one EVENTS message (a publish-API key
-- used again after the idempotency horizon, a pkg/events id after the
-- duplicate window, a recreated EVENTS stream). The events table keeps the
-- first; it now says which stream incarnation that was, and every later
-- message stored under the same id is kept here (without its payload,
-- which its dead letters carry), so that a replay never takes one
-- message's payload for another's and the event page lists them all.

ALTER TABLE events ADD COLUMN incarnation text NOT NULL DEFAULT '';

CREATE TABLE event_incarnations (
    event_id       text NOT NULL,
    incarnation    text NOT NULL,
    stream_seq     bigint NOT NULL,
    subject        text NOT NULL,
    received_at    timestamptz NOT NULL,
    payload_sha256 bytea NOT NULL,
    payload_size   integer NOT NULL,
    PRIMARY KEY (event_id, incarnation, stream_seq)
);
CREATE INDEX event_incarnations_received_at ON event_incarnations (received_at);
