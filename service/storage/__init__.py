"""Redis: key names, Lua, the client, the batch transaction of the write side and the read primitives."""
