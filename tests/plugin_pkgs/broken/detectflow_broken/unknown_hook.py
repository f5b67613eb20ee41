from detectflow import hookimpl


@hookimpl
def detectflow_no_such_hook():
    return None
