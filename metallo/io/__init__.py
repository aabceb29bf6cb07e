"""metallo.io"""
