"""Alembic environment for the cutover state DB."""

from alembic import context

from cutover.core.state.models import metadata

config = context.config
VERSION_TABLE = "alembic_version_cutover"


def run_offline() -> None:
    context.configure(
        url=config.attributes["url"],
        target_metadata=metadata,
        literal_binds=True,
        version_table=VERSION_TABLE,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
