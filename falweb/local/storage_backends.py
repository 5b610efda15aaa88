"""Which store the runtime's files go to: the instance folder (:class:`Storage`, the default)
or an S3-compatible object store (:class:`S3Storage`, ``FALWEB_STORAGE_URL``). Both keep
their rows in the runtime's database; this module only chooses, so neither imports the other.
"""

from falweb.local.storage import Storage


def open_storage(db, config, folder):
    """Where files go: the object store of ``FALWEB_STORAGE_URL`` (rows in ``db``), else
    ``folder``. :class:`~falweb.store.settings.SettingError` naming a bad setting."""
    from falweb.store import settings as store_settings

    max_bytes = config["FALWEB_LOCAL_MAX_UPLOAD_BYTES"]
    max_storage = config.get("FALWEB_LOCAL_MAX_STORAGE_BYTES") or 0
    location = store_settings.storage_location(config)
    if location is None:
        return Storage(db, folder, max_bytes, max_storage)
    # Lazily: boto3 is an extra (falweb[scale]) the default never needs.
    from falweb.local.s3_storage import S3Storage

    return S3Storage(db, location, config, max_bytes, max_storage)
