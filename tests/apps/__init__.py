"""Small applications that tests load into real worker processes."""
