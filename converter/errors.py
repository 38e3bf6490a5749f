class SeqclsError(Exception):
    """A problem with the user's input or environment.

    The CLI prints it as one line and exits with code 2, so the message must say what is wrong and what to do.
    """
