-- The organisation has one configuration document: a second registration of
-- kind `org_config` is refused by the database, so two admins registering at
-- the same moment (on two nodes) cannot both succeed.
CREATE UNIQUE INDEX document_scopes_one_org_config ON document_scopes (kind) WHERE kind = 'org_config';
