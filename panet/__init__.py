"""panet: a reference reproduction of PANet (Wang et al., ICCV 2019)."""

import warnings

# sacred 0.8.7 imports pkg_resources, and setuptools warns about it whenever sacred is imported
warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
