-- The global revision: one row, bumped by exactly one per mutation.
CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), revision BIGINT NOT NULL);
INSERT INTO meta (id, revision) VALUES (1, 0);

-- Every Neutron / DVR-extension object as its JSON body; seq keeps creation order.
CREATE TABLE objects (
    resource TEXT NOT NULL,
    id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (resource, id)
);
CREATE INDEX objects_seq ON objects (seq);

-- The change log: one or more rows per revision, never a gap between revisions.
CREATE TABLE changes (
    revision BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    resource TEXT NOT NULL,
    id TEXT NOT NULL,
    op TEXT NOT NULL,
    object TEXT NOT NULL,
    PRIMARY KEY (revision, idx)
);

-- Agents as they report (heartbeats are not part of the revisioned state).
CREATE TABLE agents (
    id TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL,
    agent_type TEXT NOT NULL,
    body TEXT NOT NULL,
    heartbeat BIGINT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (host, agent_type)
);
