"""GPU profile data files (one JSON per GPU); read with glmtrt.build.profile.load_profile."""
