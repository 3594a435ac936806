DROP TABLE metric_points;
