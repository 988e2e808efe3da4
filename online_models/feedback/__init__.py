"""Delayed feedback: joining outcomes to the predictions they follow."""
