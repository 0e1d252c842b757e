# Drawn by semfocus compare: run `gnuplot plots.gp` in this directory.
set datafile separator ','
set terminal pngcairo noenhanced size 960,600 font ',11'
set style fill transparent solid 0.2 noborder
set grid
set key outside right top
set xlabel 'epoch'

set output 'train_loss.png'
set title 'parity: training loss (median over seeds, 25-75% band)'
set ylabel 'training loss'
plot 'band_full.csv' skip 1 using 1:4:5 with filledcurves lc rgb '#1f77b4' notitle, \
     'band_full.csv' skip 1 using 1:3 with lines lw 2 lc rgb '#1f77b4' title 'full', \
     'band_topk_5.csv' skip 1 using 1:4:5 with filledcurves lc rgb '#d62728' notitle, \
     'band_topk_5.csv' skip 1 using 1:3 with lines lw 2 lc rgb '#d62728' title 'topk:5', \
     'band_banded_5.csv' skip 1 using 1:4:5 with filledcurves lc rgb '#2ca02c' notitle, \
     'band_banded_5.csv' skip 1 using 1:3 with lines lw 2 lc rgb '#2ca02c' title 'banded:5', \
     'band_block_5.csv' skip 1 using 1:4:5 with filledcurves lc rgb '#ff7f0e' notitle, \
     'band_block_5.csv' skip 1 using 1:3 with lines lw 2 lc rgb '#ff7f0e' title 'block:5'
unset output

set output 'test_acc.png'
set title 'parity: held-out accuracy (median over seeds, 25-75% band)'
set ylabel 'held-out accuracy'
plot 'band_full.csv' skip 1 using 1:13:14 with filledcurves lc rgb '#1f77b4' notitle, \
     'band_full.csv' skip 1 using 1:12 with lines lw 2 lc rgb '#1f77b4' title 'full', \
     'band_topk_5.csv' skip 1 using 1:13:14 with filledcurves lc rgb '#d62728' notitle, \
     'band_topk_5.csv' skip 1 using 1:12 with lines lw 2 lc rgb '#d62728' title 'topk:5', \
     'band_banded_5.csv' skip 1 using 1:13:14 with filledcurves lc rgb '#2ca02c' notitle, \
     'band_banded_5.csv' skip 1 using 1:12 with lines lw 2 lc rgb '#2ca02c' title 'banded:5', \
     'band_block_5.csv' skip 1 using 1:13:14 with filledcurves lc rgb '#ff7f0e' notitle, \
     'band_block_5.csv' skip 1 using 1:12 with lines lw 2 lc rgb '#ff7f0e' title 'block:5'
unset output
