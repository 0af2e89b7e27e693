"""The admin web listener: `/healthz` (no login), Prometheus `/metrics` and a read-only status page
behind HTTP Basic against the admin users file (`spooler admin-user add NAME`)."""

from spooler.adminweb.resource import AdminWebResource, build_admin_web_site, status_page_data

__all__ = ["AdminWebResource", "build_admin_web_site", "status_page_data"]
