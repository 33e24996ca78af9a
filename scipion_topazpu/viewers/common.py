"""A view that shows a PNG written by topazpu_core.plots (matplotlib, desktop only)."""
from pyworkflow.viewer import View


class PngView(View):
    """Shows a PNG file in a matplotlib window; building it needs no display."""

    def __init__(self, path, title=''):
        self.path = path
        self.title = title

    def show(self):
        import matplotlib.image as mpimg
        from pwem.viewers.plotter import EmPlotter
        plotter = EmPlotter(x=1, y=1, windowTitle=self.title or self.path)
        ax = plotter.createSubPlot(self.title, '', '')
        ax.imshow(mpimg.imread(self.path))
        ax.set_axis_off()
        plotter.show()
