-- Row-level security on tenant tables: a second wall behind the app id every query carries.
-- A session sees a tenant row only when it set `tollgate.app_id` to that row's app (per
-- transaction), or explicitly asked for every app with `tollgate.all_apps = on` (the key
-- lookup, operators' cross-app views). A query that forgets both sees nothing.
-- FORCE applies the policies to the table owner too; superusers still bypass them, so
-- tollgate must connect as an ordinary role (docs/auth.md).
CREATE FUNCTION tollgate_tenant_visible(row_app_id BIGINT) RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('tollgate.all_apps', true), '') = 'on'
        OR row_app_id = nullif(current_setting('tollgate.app_id', true), '')::BIGINT
$$;

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users
    USING (tollgate_tenant_visible(app_id)) WITH CHECK (tollgate_tenant_visible(app_id));

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tollgate_tenant_visible(app_id)) WITH CHECK (tollgate_tenant_visible(app_id));

ALTER TABLE invite_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE invite_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invite_codes
    USING (tollgate_tenant_visible(app_id)) WITH CHECK (tollgate_tenant_visible(app_id));

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log
    USING (tollgate_tenant_visible(app_id)) WITH CHECK (tollgate_tenant_visible(app_id));
