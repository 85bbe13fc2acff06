"""Testing helpers RayDog's users get too: a YellowDog platform emulator, real Redis and OpenSSH servers
on loopback, and pytest fixtures (installed as the `raydog` pytest plugin) with leak checks."""
