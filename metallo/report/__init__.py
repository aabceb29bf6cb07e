"""metallo.report"""
