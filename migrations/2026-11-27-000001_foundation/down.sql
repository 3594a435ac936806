DROP TABLE environments;
DROP TABLE projects;
DROP TABLE invites;
DROP TABLE memberships;
DROP TABLE organizations;
DROP TABLE users;
DROP TABLE instance;
