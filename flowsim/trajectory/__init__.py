"""The oracle for schemes whose fast state is a trajectory driven by a time series.

oracle.py   TrajectoryOracle, trajectory_gradient: the exact gradient of a
            time-integrated loss through the ODE by diffrax's adjoints, over a
            window of the trajectory
"""

from .oracle import ADJOINTS, TrajectoryOracle, trajectory_gradient, window_mask

__all__ = ["ADJOINTS", "TrajectoryOracle", "trajectory_gradient", "window_mask"]
