"""The Docker runtime by concern; :class:`exeunit.docker_runtime.DockerRuntime` composes them.

- :mod:`~exeunit.docker.engine`: docker-py on worker threads, its errors mapped to ours;
- :mod:`~exeunit.docker.containers`: the hardened container and its ``/work`` volume;
- :mod:`~exeunit.docker.exec`: one command, its output, timeout and OOM;
- :mod:`~exeunit.docker.kill`: killing one command and what it left;
- :mod:`~exeunit.docker.files`: files into and out of ``/work``;
- :mod:`~exeunit.docker.images`: save, verify and load images;
- :mod:`~exeunit.docker.usage` and :mod:`~exeunit.docker.cgroups`: usage counters from the cgroup.

Importing :mod:`exeunit` does not import this package (it needs the ``docker`` library).
"""
