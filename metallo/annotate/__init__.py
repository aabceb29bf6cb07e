"""metallo.annotate"""
