"""Generated images: A1111 infotext, PNG text chunks, atomic files and the gallery."""
