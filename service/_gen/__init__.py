"""Generated from proto/ by service.protogen; do not edit."""
