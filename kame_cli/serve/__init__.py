"""`kame serve`: the tandem for clients on other machines, over moshi's WebSocket protocol."""
