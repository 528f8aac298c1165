-- 0007: statistics of which (destination, status) pairs the deliveries
-- hold, so that the planner knows a pair that is rare or absent. Without
-- them it multiplies the two columns' frequencies, expects a match every
-- few hundred events, and answers GET /v1/events?destination=…&status=…
-- by walking events newest first and probing deliveries for each: for a
-- destination with no delivery in that status, every event (3.5 s at a
-- million events, measured by the benchmark table's queries rows). With
-- them it reads that pair's deliveries through deliveries_destination_status
-- first when they are few (0.1 ms). ANALYZE (autovacuum) keeps them.

CREATE STATISTICS IF NOT EXISTS deliveries_destination_status (mcv) ON destination, status FROM deliveries;
