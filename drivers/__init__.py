"""Page-description-language analysers (page counts, colour, duplex, paper size) live here."""
