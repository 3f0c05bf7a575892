"""panet: a reference reproduction of PANet (Wang et al., ICCV 2019)."""
