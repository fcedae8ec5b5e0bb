"""inpaint: photo restoration by neural inpainting."""
