# Drawn by semfocus theory: run `gnuplot landscape.gp` in this directory.
set datafile separator ','
set terminal pngcairo noenhanced size 1200,560 font ',11'
set output 'landscape.png'
set multiplot layout 1,2 title 'training loss on theta + a d1 + b d2 (directions normalised per tensor)'
set size ratio -1
set xlabel 'a'
set ylabel 'b'
set palette rgbformulae 33,13,10
set format cb '%g'
set cbrange [0.283566:5.59062]
set autoscale xfix
set autoscale yfix
set title 'full'
plot 'landscape_full.csv' skip 1 using 1:2:3 with image notitle
set title 'top-k(5)'
plot 'landscape_topk.csv' skip 1 using 1:2:3 with image notitle
unset multiplot
unset output
