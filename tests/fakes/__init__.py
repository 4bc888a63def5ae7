"""Stand-ins for services outside the machine, speaking their real protocols."""
