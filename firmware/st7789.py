"""ST7789 colour TFT controller on SPI: the LilyGO T-Display's 1.14" 135x240 IPS glass.

The ST7789 speaks the same MIPI DCS commands as the ILI9341, so it shares that driver. Its
memory is 240x320 and the glass shows only part of it: in portrait columns 52..186 and rows
40..279. In landscape (MADCTL MV exchanges columns and rows) the window is offset by 40
columns and, with MX mirroring the 240 memory columns, 240 - 52 - 135 = 53 rows.
"""

from ili9341 import ILI9341


class ST7789(ILI9341):
    """An ST7789 in landscape; the defaults fit the T-Display's glass.

    madctl 0x60 (MX|MV) with offsets (40, 53) is the landscape the common drivers call
    rotation 1; 0xA0 (MY|MV) with (40, 52) is the same picture turned half a turn, for a
    board mounted the other way round. The
    controller's power-on settings suit this glass, so there is no tuning; it is IPS and
    needs `invert`.
    """

    TUNING = b""

    def __init__(
        self,
        spi,
        cs,
        dc,
        rst=None,
        width: int = 240,
        height: int = 135,
        x_offset: int = 40,
        y_offset: int = 53,
        madctl: int = 0x60,
        invert: bool = True,
        band_rows: int = 15,
        backlight=None,
    ) -> None:
        super().__init__(
            spi,
            cs,
            dc,
            rst,
            width,
            height,
            madctl,
            invert,
            band_rows,
            backlight,
            x_offset,
            y_offset,
        )
