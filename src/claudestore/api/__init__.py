"""HTTP APIs beside the generation endpoints: the operator's admin API (``/admin``) and the
customer self-service API (``/v1/account``), as Starlette apps the gateway mounts."""
