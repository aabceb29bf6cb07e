"""metallo.correlate"""
