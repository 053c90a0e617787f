# Image for the nodes of a GPU Ray cluster that runs `kdforge search`.
# Ray's own CUDA image, plus kdforge. Ray's version must match the one kdforge was
# tested with (pyproject, `ray[tune]`), and every node must run this same image.
#   docker build -f deploy/cluster.Dockerfile -t kdforge-cluster:0.1.0 .
FROM rayproject/ray:2.60.0-py311-gpu

WORKDIR /opt/kdforge
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users core core
COPY --chown=ray:users plugins plugins
COPY --chown=ray:users search_spaces search_spaces
COPY --chown=ray:users deploy deploy
COPY --chown=ray:users examples examples
# The image's torch is the CUDA build; keep it (pip sees it satisfies torch>=2.2).
RUN pip install --no-cache-dir .
