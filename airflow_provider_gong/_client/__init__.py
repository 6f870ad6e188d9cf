"""
The HTTP client under :class:`~airflow_provider_gong.hooks.gong.GongHook`, one concept per module.

Private: the hook is the public face. Nothing here imports the hook, the operators, the transfer or the
batch engine; the hook turns an Airflow connection into :class:`~._client.settings.GongSettings` and
hands them to :class:`~._client.client.GongClient`.
"""
