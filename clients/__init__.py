"""nirsd clients: subscriber API, tail, recorder, viewer, LSL bridge."""
