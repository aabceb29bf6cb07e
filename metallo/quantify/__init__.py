"""metallo.quantify"""
