"""`inpaint edit`: correct the damage masks of a batch by hand, in a local web page.

- `catalogue`: the batch (photos, the mask each gets, the masks paired with it now), planned once.
- `records`: what a hand edit leaves beside a mask: the detector's original, kept once, and a record.
- `store`: saving a mask (bounded, checked upload; atomic writes; originals kept; one writer per photo).
- `pixels`: what the page shows: a downscaled view first, full-resolution tiles as it zooms in.
- `server`: the Starlette application and its guard (127.0.0.1, token, same origin only).
- `session`: one server per masks folder (a lock), on uvicorn until Ctrl-C.
"""
