"""The interceptor chain around every step, and the built-in interceptors."""
