# -*- coding: utf-8 -*-
"""
@article{Bepler2019,
title = "Positive-unlabeled convolutional neural networks for particle picking in cryo-electron micrographs",
author = "Bepler, Tristan and Morin, Andrew and Rapp, Micah and Brasch, Julia and Shapiro, Lawrence and Noble, Alex J. and Berger, Bonnie",
journal = "Nature Methods",
volume = "16",
number = "11",
pages = "1153--1160",
year = "2019",
doi = "http://doi.org/10.1038/s41592-019-0575-8"
}

@inproceedings{Bepler2018,
title = "Positive-unlabeled convolutional neural networks for particle picking in cryo-electron micrographs",
author = "Bepler, Tristan and Morin, Andrew and Noble, Alex J. and Brasch, Julia and Shapiro, Lawrence and Berger, Bonnie",
booktitle = "Research in Computational Molecular Biology (RECOMB 2018)",
series = "Lecture Notes in Computer Science",
volume = "10812",
pages = "245--247",
year = "2018",
doi = "http://doi.org/10.1007/978-3-319-89929-9_21"
}
"""
