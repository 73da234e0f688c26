"""Getting FMA's archives: resumable, verified HTTP downloads and safe streaming extraction."""
