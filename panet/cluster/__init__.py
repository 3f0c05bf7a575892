"""Running the jobs of scripts/reproduce.py elsewhere than one after another in its process:
K at a time on one machine (`parallel`), or on a Slurm cluster through submitit (`slurm`);
`executors` holds the command-line options, `jobrun` what running one job means, `jobstatus`
where each job stands."""
