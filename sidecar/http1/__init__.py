"""The HTTP/1.1 proxy: framing decisions (pure), readers and wire format (sans-I/O), and the asyncio edges."""
