"""The admin portal: a browser UI served by the node daemon (see ``portal``)."""
