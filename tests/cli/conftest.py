import os

# Rich sizes its console when psatriage.cli is imported; give it room so lines do not wrap.
os.environ["COLUMNS"] = "200"
