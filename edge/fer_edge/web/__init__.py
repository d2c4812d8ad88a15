"""The pages: the device's own page and the fleet page, behind one set of guards."""
