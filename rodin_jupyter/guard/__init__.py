"""What a generation costs and whether it may be sent: prices and the decision."""
