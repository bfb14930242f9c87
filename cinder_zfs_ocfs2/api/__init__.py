"""The snapshot catalog for tenants: a WSGI service behind Keystone (DESIGN.md section 9).

app: the application and its routes; queries: tenant-scoped reads of the catalog; markers:
signed page markers; policies: oslo.policy defaults; opts: oslo.config options; wsgi: the
pipeline (auth_token) and gunicorn's entry.
"""
